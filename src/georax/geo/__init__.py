"""georax.geo: domain operators (cloud, indices, radiometry, sar, fusion, viz, augment, qa).

Each family is a module ``georax.geo.<family>`` holding pure ``jax.numpy`` functions and the thin
Operator classes that call them.
"""
