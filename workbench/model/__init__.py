"""The model: a mini DeepSeek-V2 (MLA + DeepSeekMoE) or a dense twin, generation, checkpoints, export."""

from workbench.model.config import PRESETS, ModelConfig, preset
from workbench.model.transformer import Output, Transformer

__all__ = ["ModelConfig", "PRESETS", "preset", "Transformer", "Output"]
