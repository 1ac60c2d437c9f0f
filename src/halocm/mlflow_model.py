"""The MLflow pyfunc model, logged as code ("models from code"), so nothing is pickled.

MLflow copies this file into the logged model and runs it at load time; `set_model` names the
model object. Input: {'condition': (N, Cc, H, W), 'params': (N, P)} in physical units.
Output: one sampled map per condition, (N, C, H, W). Inference parameters: `n_steps`, `seed`.
The model config holds the sampling settings the pipeline registered it with.
"""

from __future__ import annotations

import warnings

import mlflow
import numpy as np

# Loading mlflow.pyfunc (below, lazily) warns about `Any` hints in MLflow's own GenAI types,
# which this model does not use (a filter, not catch_warnings: that is not thread-safe).
warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType")


class HalocmConsistencyModel(mlflow.pyfunc.PythonModel):
    # MLflow's type-hint validation of `predict` cannot describe this input (a dict of float
    # arrays of different ranks) and would warn at every definition; the signature logged
    # from the input example checks inputs instead. MLflow's own opt-out for such models:
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from halocm.api import load_model

        self.generator = load_model(
            context.artifacts["checkpoint"], device="auto", sample=dict(context.model_config)
        )

    def predict(self, context, model_input, params=None):
        params = params or {}
        inputs = dict(model_input)
        maps = self.generator.sample(
            np.asarray(inputs["condition"], dtype=np.float32),
            np.asarray(inputs["params"], dtype=np.float32) if "params" in inputs else None,
            n_steps=int(params.get("n_steps", 1)),
            seed=int(params.get("seed", 0)),
        )
        return maps[:, 0]


mlflow.models.set_model(HalocmConsistencyModel())
