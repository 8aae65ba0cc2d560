// Every decoder, one line each, in the order menus and comparisons list them. Each NAME has a
// `DecoderInfo NAME_decoder()` in its own file of core/decoders/ (core/registry.h).
RETREEVER_DECODER(tca)
RETREEVER_DECODER(ca)
RETREEVER_DECODER(perceiver)
RETREEVER_DECODER(treeformer)
