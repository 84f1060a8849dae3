"""Fine-tuning (LoRA with Latent Manifold Rectification) and evaluation on a studio's own ground truth.

Needs the ``train`` extra (peft, accelerate, matplotlib): ``pip install -e '.[train]'``.
"""
