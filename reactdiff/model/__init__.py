"""The ReactDiff model: EDM denoiser, temporal U-Net, priors."""
