"""Model loading (folders, hub ids, single files, the bundled model) and parameterisations."""

from .loading import (BUNDLED_GROUNDED, BUNDLED_MODEL, ModelBundle, bundled_model_path, load_folder, load_model, load_pretrained,
                      load_single_file)
from .parameterization import (EpsDiscrete, FlowMatch, ModelSampling, VDiscrete, X0Discrete,
                               model_sampling_from_config)

__all__ = ["BUNDLED_GROUNDED", "BUNDLED_MODEL", "ModelBundle", "bundled_model_path", "load_folder", "load_model", "load_pretrained",
           "load_single_file", "ModelSampling", "EpsDiscrete", "VDiscrete", "X0Discrete", "FlowMatch",
           "model_sampling_from_config"]
