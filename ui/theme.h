// Light and dark palettes (Fusion style) for the app and its plots.
#pragma once

class QCustomPlot;

namespace retreever::ui {

void apply_theme(bool dark);
void style_plot(QCustomPlot* plot, bool dark);

}  // namespace retreever::ui
