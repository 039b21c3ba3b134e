"""EfficientAD (Batzner et al., WACV 2024): PDN teacher/student, autoencoder, losses, map normalisation.

Building blocks only; training (engine integration, distillation, penalty stream) is not built yet.
"""
