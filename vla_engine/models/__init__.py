"""Models: vision encoders, projectors, language backbones, action heads and the VLA model.

Importing this package is light (no torch, no transformers): the built-in parts are registered
as "module:attr" strings and the public classes load on first attribute access.

    from vla_engine.models import VLAModel, MLPActionHead, create_vla_model
    model = create_vla_model("tiny", action_dim=2, state_dim=2)
"""

from __future__ import annotations

import importlib

from ..registry import ACTION_HEADS, FUSIONS, LANGUAGE_MODELS, PROJECTORS, SENSOR_ENCODERS, VISION_ENCODERS

_HEAD_CONFIGS = "vla_engine.models.configuration_heads:"  # the heads' settings classes (light)
_VISION_CONFIGS = "vla_engine.models.configuration_vision:"  # the encoders' settings classes (light)
_PROJECTOR_CONFIGS = "vla_engine.models.configuration_projector:"  # the projectors' settings classes (light)

# -- built-in parts (the registry key is the config value) -----------------------------------------
VISION_ENCODERS.register("cnn", "vla_engine.models.vision:CNNEncoder",
                         config=_VISION_CONFIGS + "CNNVisionConfig",
                         description="Small conv net (4 stride-2 layers, GroupNorm) -> pooled spatial tokens; CPU default")
VISION_ENCODERS.register("resnet18", "vla_engine.models.vision:ResNet18Encoder",
                         config=_VISION_CONFIGS + "ResNetVisionConfig",
                         description="torchvision ResNet-18 (ImageNet normalisation), last feature map as tokens")
VISION_ENCODERS.register("siglip", "vla_engine.models.vision:SiglipEncoder",
                         config=_VISION_CONFIGS + "TowerVisionConfig",
                         description="transformers SigLIP vision tower (small from config, or from_pretrained)")
VISION_ENCODERS.register("cnn-keypoints", "vla_engine.models.keypoints:SpatialSoftmaxEncoder",
                         config=_VISION_CONFIGS + "CNNVisionConfig",
                         description="Small CNN -> spatial-softmax keypoints (position + feature per token); precise")
VISION_ENCODERS.register("resnet34", "vla_engine.models.vision:ResNet34Encoder",
                         config=_VISION_CONFIGS + "ResNetVisionConfig",
                         description="torchvision ResNet-34 (ImageNet normalisation), last feature map as tokens")
VISION_ENCODERS.register("resnet50", "vla_engine.models.vision:ResNet50Encoder",
                         config=_VISION_CONFIGS + "ResNetVisionConfig",
                         description="torchvision ResNet-50 (ImageNet normalisation), last feature map as tokens")
VISION_ENCODERS.register("clip", "vla_engine.models.vision:ClipEncoder",
                         config=_VISION_CONFIGS + "TowerVisionConfig",
                         description="transformers CLIP vision tower (small from config, or from_pretrained)")
VISION_ENCODERS.register("dinov2", "vla_engine.models.vision:Dinov2Encoder",
                         config=_VISION_CONFIGS + "TowerVisionConfig",
                         description="transformers DINOv2 (small from config, or from_pretrained)")
VISION_ENCODERS.register("dinov2-reg", "vla_engine.models.vision:Dinov2RegEncoder",
                         config=_VISION_CONFIGS + "TowerVisionConfig",
                         description="transformers DINOv2 with register tokens (OpenVLA's DINOv2 tower)")
VISION_ENCODERS.register("smolvlm", "vla_engine.models.vlm:SmolVLMVision",
                         config=_VISION_CONFIGS + "VLMVisionConfig",
                         description="SmolVLM (Idefics3) vision tower + its connector (pixel shuffle) -> text-width tokens")
VISION_ENCODERS.register("qwen2-vl", "vla_engine.models.vlm:Qwen2VLVision",
                         config=_VISION_CONFIGS + "VLMVisionConfig",
                         description="Qwen2-VL vision tower + its patch merger -> text-width tokens")
VISION_ENCODERS.register("dinosiglip", "vla_engine.models.fused_vision:DinoSiglipEncoder",
                         config=_VISION_CONFIGS + "FusedTowerVisionConfig",
                         description="OpenVLA's fused DINOv2 + SigLIP patch features (channel-wise concatenation)")
PROJECTORS.register("mlp", "vla_engine.models.projector:MLPProjector",
                    config=_PROJECTOR_CONFIGS + "PlainProjectorConfig",
                    description="2-layer MLP with GELU: vision dim -> LM hidden size")
PROJECTORS.register("attention", "vla_engine.models.projector:AttentionProjector",
                    config=_PROJECTOR_CONFIGS + "ResamplerProjectorConfig",
                    description="cross-attention pooling of the visual tokens to N learned queries")
PROJECTORS.register("perceiver", "vla_engine.models.projector:PerceiverResampler",
                    config=_PROJECTOR_CONFIGS + "ResamplerProjectorConfig",
                    description="Perceiver resampler (Flamingo): N latents, cross- and self-attention layers")
PROJECTORS.register("fused-gelu-mlp", "vla_engine.models.projector:FusedGeluMLPProjector",
                    config=_PROJECTOR_CONFIGS + "PlainProjectorConfig",
                    description="OpenVLA's 3-layer MLP for fused features: Dv -> 4 Dv -> H -> H with GELUs")
PROJECTORS.register("identity", "vla_engine.models.projector:IdentityProjector",
                    config=_PROJECTOR_CONFIGS + "PlainProjectorConfig",
                    description="no projection: vision tokens already LM-wide (SmolVLM's connector, as in SmolVLA)")
LANGUAGE_MODELS.register("qwen2", "vla_engine.models.language:Qwen2Backbone",
                         description="Qwen2 decoder (small from config, or from_pretrained)")
LANGUAGE_MODELS.register("llama", "vla_engine.models.language:LlamaBackbone",
                         description="Llama decoder (small from config, or from_pretrained)")
LANGUAGE_MODELS.register("smolvlm", "vla_engine.models.vlm:SmolVLMBackbone",
                         description="SmolVLM's text model (Llama) + lm_head as a causal LM (small, or from a VLM folder)")
LANGUAGE_MODELS.register("qwen2-vl", "vla_engine.models.vlm:Qwen2VLBackbone",
                         description="Qwen2-VL's text model + lm_head as a Qwen2 causal LM (small, or from a VLM folder)")
ACTION_HEADS.register("mlp", "vla_engine.models.heads:MLPActionHead",
                      config=_HEAD_CONFIGS + "MLPHeadConfig",
                      description="MLP regression of an action chunk from the action-query feature")
ACTION_HEADS.register("gaussian", "vla_engine.models.gaussian_head:GaussianMLPActionHead",
                      config=_HEAD_CONFIGS + "GaussianHeadConfig",
                      description="Gaussian MLP: mean and learned std per action (log-probabilities for RL)")
ACTION_HEADS.register("diffusion", "vla_engine.models.diffusion_head:DiffusionActionHead",
                      config=_HEAD_CONFIGS + "DiffusionHeadConfig",
                      description="denoising diffusion over action chunks (diffusers DDPM training, DDPM/DDIM sampling)")
ACTION_HEADS.register("transformer", "vla_engine.models.transformer_head:TransformerActionHead",
                      config=_HEAD_CONFIGS + "TransformerHeadConfig",
                      description="transformer decoder over the chunk (ACT-style), optional temporal ensembling")
ACTION_HEADS.register("flow", "vla_engine.models.flow_head:FlowMatchingActionHead",
                      config=_HEAD_CONFIGS + "FlowHeadConfig",
                      description="flow-matching action expert (pi0 / SmolVLA): transformer over the chunk, Euler sampling")
ACTION_HEADS.register("tokens", "vla_engine.models.action_tokens:ActionTokenHead",
                      config=_HEAD_CONFIGS + "TokenHeadConfig",
                      description="OpenVLA-style discrete action tokens (bins) predicted through the LM's vocabulary")
ACTION_HEADS.register("smolvla-expert", "vla_engine.models.smolvla_expert:SmolVLAExpertHead",
                      config=_HEAD_CONFIGS + "SmolVLAExpertConfig",
                      description="SmolVLA's action expert: LM-layer copy cross-attending to the VLM's keys/values, flow matching")
# sensor encoders and fusions of the multi-sensor (driving) model: models/sensors.py, models/fusion.py
SENSOR_ENCODERS.register("pointnet", "vla_engine.models.sensors:PointNetEncoder",
                         description="PointNet: shared per-point MLP + masked max-pool (lidar)")
SENSOR_ENCODERS.register("point-transformer", "vla_engine.models.sensors:PointTransformerEncoder",
                         description="Point Transformer: local attention over k nearest neighbours (lidar)")
SENSOR_ENCODERS.register("radar", "vla_engine.models.sensors:RadarEncoder",
                         description="radar target list (range, azimuth, radial velocity, rcs) or range-azimuth grid")
SENSOR_ENCODERS.register("imu", "vla_engine.models.sensors:IMUEncoder",
                         description="small transformer over the IMU sequence (accelerometer, gyro)")
FUSIONS.register("concat", "vla_engine.models.fusion:SensorFusion",
                 description="concatenate modality tokens + self-attention (SensorFusion)")
FUSIONS.register("cross-modal", "vla_engine.models.fusion:CrossModalFusion",
                 description="the camera feature cross-attends to the other sensors")
FUSIONS.register("hierarchical", "vla_engine.models.fusion:HierarchicalFusion",
                 description="spatial attention across sensors, then temporal attention across steps")
FUSIONS.register("gated", "vla_engine.models.fusion:GatedFusion",
                 description="learned per-sample modality weights (softmax gate), weighted sum")

_LAZY = {
    "VLAModel": ".vla", "create_vla_model": ".vla", "CheckpointError": ".checkpoint", "ModelInputError": ".inputs",
    "VLM_PRESETS": ".vlm_presets", "list_vlm_presets": ".vlm_presets", "resolve_vlm": ".vlm_presets",
    "LoRASpec": ".lora", "CHECKPOINT_FORMATS": ".formats",
    "ActionHead": ".heads", "MLPActionHead": ".heads", "masked_action_loss": ".heads",
    "VisionEncoder": ".vision", "CNNEncoder": ".vision", "ResNet18Encoder": ".vision", "SiglipEncoder": ".vision",
    "GaussianMLPActionHead": ".gaussian_head", "DiffusionActionHead": ".diffusion_head",
    "TransformerActionHead": ".transformer_head", "ActionTokenHead": ".action_tokens",
    "ActionTokenizer": ".action_tokens",
    "FlowMatchingActionHead": ".flow_head", "DinoSiglipEncoder": ".fused_vision", "SpatialSoftmaxEncoder": ".keypoints", "TemporalEnsembler": ".ensemble",
    "ResNet34Encoder": ".vision", "ResNet50Encoder": ".vision", "ClipEncoder": ".vision", "Dinov2Encoder": ".vision",
    "Dinov2RegEncoder": ".vision", "FusedGeluMLPProjector": ".projector",
    "MLPProjector": ".projector", "AttentionProjector": ".projector", "PerceiverResampler": ".projector",
    "VisionProjector": ".projector",
    "SmolVLAWrapper": ".wrappers", "OpenVLAWrapper": ".wrappers",
    "LanguageBackbone": ".language", "Qwen2Backbone": ".language", "LlamaBackbone": ".language",
    "build_byte_tokenizer": ".language", "TextTokenCache": ".language",
    "Normalizer": ".normalize", "SmolVLAExpertHead": ".smolvla_expert", "IdentityProjector": ".projector",
    "PointNetEncoder": ".sensors", "PointTransformerEncoder": ".sensors", "RadarEncoder": ".sensors",
    "IMUEncoder": ".sensors", "pad_point_clouds": ".sensors", "SensorFusion": ".fusion", "CrossModalFusion": ".fusion",
    "HierarchicalFusion": ".fusion", "GatedFusion": ".fusion", "MultiSensorVLA": ".multisensor",
    "SmolVLMVision": ".vlm", "Qwen2VLVision": ".vlm", "SmolVLMBackbone": ".vlm", "Qwen2VLBackbone": ".vlm",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vla_engine.models' has no attribute {name!r}")
