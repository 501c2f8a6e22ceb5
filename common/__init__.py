"""Framework-neutral helpers shared by every notebook (Python 3.6+, numpy 1.19+, no framework)."""
from .params import *  # noqa: F401,F403  (the protocol's hyperparameters, e.g. BATCHSIZE, LR)
from .params import profile
from .architecture import CNN_PARAMETERS
from .data import cifar_for_library, imdb_for_library, yield_mb
from .datasets.resnet50_weights import load_resnet50_weights
from .images import inference_images, photo_check_images, check_photo_predictions
from .timing import Timer, time_runs, time_passes, summarize
from .progress import Progress
from .envinfo import environment_info, print_environment
from .records import start_run, training_metrics, inference_metrics
from . import fidelity  # noqa: F401  (each notebook's Fidelity section)
