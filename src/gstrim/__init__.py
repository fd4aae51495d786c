"""gstrim: make trained 3D Gaussian Splatting scenes small and fast without losing quality."""

from gstrim.errors import GstrimError
from gstrim.scene import GaussianScene

__version__ = "0.1.0"
__all__ = ["GaussianScene", "GstrimError", "__version__"]
