"""MTQ-Net for Hugging Face transformers: non-intrusive S-MOS / N-MOS / G-MOS speech quality assessment.

Importing this package registers the model with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForAudioClassification`, `AutoFeatureExtractor`) and the `speech-quality-assessment` pipeline task.
The package is arranged in wings (docs/ARCHITECTURE.md): `model/` (what a saved folder carries), `training/`,
`labels/`, `corpus/`, `sharing/`, `scoring/`, `builds/`, `tools/` (the commands), and the `mtqnet` command in
`cli.py`.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .model.configuration_mtqnet import PRESETS, MTQNetConfig, tiny_ssl_config
from .model.feature_extraction_mtqnet import MTQNetFeatureExtractor, load_audio
from .model.modeling_mtqnet import (
    MTQNetForSpeechQualityAssessment,
    MTQNetModel,
    MTQNetModelOutput,
    MTQNetPreTrainedModel,
    SpeechQualityOutput,
    speech_quality_objective,
    target_loss_sums,
)
from .model.pipeline_mtqnet import SpeechQualityAssessmentPipeline
from .pretrained import SHIPPED as SHIPPED_MODELS
from .pretrained import pretrained_path, resolve_model
from .vocabulary import PIPELINE_TASK

__version__ = "0.3.1"

AutoConfig.register(MTQNetConfig.model_type, MTQNetConfig, exist_ok=True)
AutoModel.register(MTQNetConfig, MTQNetForSpeechQualityAssessment, exist_ok=True)
AutoModelForAudioClassification.register(MTQNetConfig, MTQNetForSpeechQualityAssessment, exist_ok=True)
AutoFeatureExtractor.register(MTQNetConfig, MTQNetFeatureExtractor, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=SpeechQualityAssessmentPipeline,
    pt_model=AutoModelForAudioClassification,
    type="audio",
)


def pipeline(task: str = PIPELINE_TASK, model=None, **kwargs):
    """`transformers.pipeline` that also takes the package's shipped models by short name
    (`pipeline("speech-quality-assessment", model="mtqnet/teacher-pesq-stoi-sdi")`), offline."""
    from transformers import pipeline as transformers_pipeline

    return transformers_pipeline(task, model=resolve_model(model) if isinstance(model, str) else model, **kwargs)


__all__ = [
    "MTQNetConfig",
    "MTQNetFeatureExtractor",
    "MTQNetModel",
    "MTQNetForSpeechQualityAssessment",
    "MTQNetPreTrainedModel",
    "MTQNetModelOutput",
    "SpeechQualityOutput",
    "SpeechQualityAssessmentPipeline",
    "speech_quality_objective",
    "target_loss_sums",
    "load_audio",
    "tiny_ssl_config",
    "PRESETS",
    "PIPELINE_TASK",
    "SHIPPED_MODELS",
    "pipeline",
    "pretrained_path",
    "resolve_model",
]
