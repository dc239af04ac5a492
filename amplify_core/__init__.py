"""amplify_core: the AMPLIFY method (Collins et al., 2025) with no ROS dependency.

Modules are named after the concept they implement: ``episodes`` (the HDF5 episode store),
``tracking`` (point trackers), ``tracks`` (track geometry and local-window labels), ``tracks_store``
(the track sidecar), ``preprocessing`` (episode -> tracks), ``metrics`` (paper D.3), ``samples``
(synthetic videos with known motion), ``visualize`` (tracks drawn over images), ``ur5`` (arm
kinematics from urdf/ur5.urdf), ``ensembling`` (ACT temporal ensembling of action chunks).
"""

__version__ = "0.1.0"
