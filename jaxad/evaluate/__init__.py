"""Prediction over a split, metrics per member, reports and heatmap overlays."""
