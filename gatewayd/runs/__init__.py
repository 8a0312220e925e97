"""The run pipeline, in parts: see :mod:`gatewayd.runs.pipeline` for how they fit."""

from gatewayd.runs.admission import Submitted
from gatewayd.runs.pipeline import PipelineSettings, RunPipeline, open_pipeline

__all__ = ["PipelineSettings", "RunPipeline", "Submitted", "open_pipeline"]
