"""Pictures of predictions: disparities in colour (colormap.py). The paper's figures: reproduce/."""
