"""A registered model's files turned into a pipeline to serve, trusting only known types."""

from __future__ import annotations

from pathlib import Path

from covertype.errors import CovertypeError


class ModelLoadError(CovertypeError):
    """A model version that cannot be served (format, files, or it fails its check)."""


def load_pipeline(model_dir: Path):
    """The sklearn pipeline of an MLflow model folder, via skops with our trusted types."""
    import skops.io
    import yaml

    from covertype.model_artifact import TRUSTED_TYPES, for_serving

    trusted = sorted(TRUSTED_TYPES)  # what skops may instantiate: training's list, no more

    try:  # MLmodel is YAML; parsed here, MLflow's client is not needed to serve a folder
        flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise ModelLoadError(f"{model_dir} is not an MLflow sklearn model: {error}") from None
    if flavor.get("serialization_format") != "skops":
        raise ModelLoadError(
            f"model is saved as {flavor.get('serialization_format')!r}; the API loads only "
            "skops files (pickle would run whatever the file says)"
        )
    try:
        pipeline = skops.io.load(model_dir / flavor["pickled_model"], trusted=trusted)
    except Exception as error:
        raise ModelLoadError(f"cannot load {model_dir}: {type(error).__name__}: {error}") from None
    for_serving(pipeline)
    return pipeline
