"""Ray math: the path from rays to colours, pure functions and small buffers, no models or fields.

Modules in the order data flows:

* ``contraction``: mip-NeRF 360 contraction of unbounded points into [-2, 2]^3.
* ``sampling``: depths along rays, stratified and inverse-CDF importance samples.
* ``occupancy``: ``OccupancyGrid``, the multi-cascade density grid that skips empty space.
* ``sdf_occupancy``: occupancy from an SDF at the cell centres, depths in occupied cells.
* ``marching``: candidate intervals tested against a grid, packing whole rays into budgets,
  early termination at an opacity (``render_until_opaque``).
* ``packed_rendering``: compositing of packed samples (flat arrays with ``ray_indices``).
* ``rendering``: compositing of dense [n, s] samples (weights, colour, depth, accumulation).
* ``neus_rendering``: NeuS opacity from an SDF, up-sampling, sphere bounds, background.

``readback``: lagged device -> host reads (``LaggedRead``), so a step never waits on a count.

Import the modules themselves (``from nerflite.raymath.sampling import sample_pdf``); this package
re-exports nothing.
"""
