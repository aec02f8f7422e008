"""ldm: latent-diffusion arbitrary-scale image codec, upsampler and generator (Kim & Kim, CVPR 2024, on LIIF)."""
