// QCustomPlot's header uses the 'signals' and 'foreach' keywords, which QT_NO_KEYWORDS
// (needed beside LibTorch) removes; this wrapper maps them for the include alone.
#pragma once

#ifndef signals
#define signals Q_SIGNALS
#define RETREEVER_QCP_SIGNALS
#endif
#ifndef foreach
#define foreach Q_FOREACH
#define RETREEVER_QCP_FOREACH
#endif
#include <qcustomplot.h>
#ifdef RETREEVER_QCP_SIGNALS
#undef signals
#undef RETREEVER_QCP_SIGNALS
#endif
#ifdef RETREEVER_QCP_FOREACH
#undef foreach
#undef RETREEVER_QCP_FOREACH
#endif
