"""Networks: norms, activations, initialisers, feed-forward and recurrent models (each a registry),
and folding BN into the layer below for inference."""
