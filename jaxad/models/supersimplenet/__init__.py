"""SuperSimpleNet (ICPR 2024; JIMS 2025 extension), unsupervised and supervised."""
