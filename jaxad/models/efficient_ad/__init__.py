"""EfficientAD (Batzner et al., WACV 2024): PDN teacher/student, autoencoder, training as a `Method`
(`steps.py`, registered as "efficient_ad"), teacher distillation (`distill.py`). See README.md.
"""
