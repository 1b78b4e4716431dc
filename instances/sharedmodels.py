"""The shared models folder: one layout under $AIKORE_MODELS_DIR that every instance maps in.

Apps are pointed at these folders the least invasive way: their own configuration first
(ComfyUI's extra_model_paths.yaml written by ``aikore_comfyui_model_paths``, Forge's
``--ckpt-dir`` and friends), links (``aikore_link_models``) only for apps that can't be configured.
Neither ever moves or deletes a user's file, and links are excluded from git so a checkout stays
clean (blueprints/functions.sh). The folders are created at every instance start (cheap), so a
fresh install shows the layout before the first download.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from aikore_site.files import atomic_write, shared_dir

# folder -> what goes there (README.md of the models folder, and the docs). ComfyUI's names.
LAYOUT: dict[str, str] = {
    "checkpoints": "full model checkpoints (.safetensors/.ckpt): SD 1.5, SDXL, ...",
    "diffusion_models": "diffusion models / UNets alone (Flux, SD3, Wan, ...)",
    "unet": "older name for diffusion_models, still read by some apps",
    "text_encoders": "text encoders (CLIP-L, T5, ...)",
    "clip": "older name for text_encoders, still read by some apps",
    "clip_vision": "CLIP vision encoders (IP-Adapter, unCLIP)",
    "vae": "VAEs",
    "vae_approx": "tiny preview VAEs (TAESD)",
    "loras": "LoRA and LyCORIS files",
    "embeddings": "textual inversion embeddings",
    "hypernetworks": "hypernetworks",
    "controlnet": "ControlNet and T2I-Adapter models",
    "upscale_models": "upscalers (ESRGAN, SwinIR, ...)",
    "style_models": "style models",
    "ipadapter": "IP-Adapter models",
    "gligen": "GLIGEN models",
    "photomaker": "PhotoMaker models",
    "llm": "language models used by nodes and tools",
    "huggingface": "the Hugging Face download cache shared by apps that fetch models by name (HF_HUB_CACHE)",
}

README = "# Shared models\n\nEvery AiKore instance sees these folders:\n\n" + "".join(
    f"- `{name}/`: {what}\n" for name, what in LAYOUT.items()
) + "\nAiKore never moves or deletes files here.\n"


def ensure_layout(root: Path | None = None) -> Path:
    """Create the missing folders of LAYOUT (existing files are never touched)."""
    root = shared_dir(Path(root or settings.MODELS_DIR))
    for name in LAYOUT:
        shared_dir(root / name)
    readme = root / "README.md"
    if not readme.exists():
        atomic_write(readme, README)
    return root
