"""RL fine-tuning of a diffusion policy with NCDPO (arXiv 2505.10482), no rclpy.

The policy is made deterministic given its noise: every noise tensor of a K-step stochastic DDIM
sampler is drawn before the step, stored with the rollout and fed back unchanged at update time,
so the K denoising steps are one differentiable map (observation, noise) -> action chunk and the
PPO gradient flows back through all of them. Exploration and the PPO likelihood come from a
Gaussian around the executed rows of that chunk. One PPO decision = one executed chunk.

    noise_sampler   the differentiable K-step map and its pre-drawn noise
    exploration     the Gaussian head (learned std with a floor)
    value           the critic (on a state vector the environment provides)
    advantages      GAE, and group-relative advantages for envs replaying one task (common random numbers)
    ppo             clipped PPO losses and the epoch / minibatch update
    chunk_env       SimEnv as a gymnasium env whose action is a chunk; rewards in `rewards`
    toy_env         a tiny env with a known optimum (tests)
    rollout         collecting decisions from a gymnasium vector env, continuously or as whole group episodes
    trainer         the NCDPO loop: resumable, learning curve, checkpoints like `dpros train`
"""
