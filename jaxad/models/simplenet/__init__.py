"""SimpleNet (CVPR 2023), faithful to the official DonaldRR/SimpleNet code; see README.md."""
