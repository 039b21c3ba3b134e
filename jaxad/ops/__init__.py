"""Pure array functions (no Flax, no state) shared by data, models and evaluation."""
