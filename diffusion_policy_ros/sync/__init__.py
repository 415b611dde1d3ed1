"""Timing of the policy's inputs and outputs (plain Python, no ROS): stamp alignment of sensor
streams into observations, when an observation starts an inference, the control tick, and the
command rates a controller sees."""
from diffusion_policy_ros.sync.observation_sync import AlignedObservation, ObservationSync, SyncFailure

__all__ = ["AlignedObservation", "ObservationSync", "SyncFailure"]
