"""Stamp alignment of sensor streams into observations (plain Python, no ROS)."""
from diffusion_policy_ros.sync.observation_sync import AlignedObservation, ObservationSync, SyncFailure

__all__ = ["AlignedObservation", "ObservationSync", "SyncFailure"]
