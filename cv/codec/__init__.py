"""The neural codec as a product: loading, file format, bit packing, entropy coding."""
