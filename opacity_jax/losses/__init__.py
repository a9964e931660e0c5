"""Losses: data losses (mse, wmse, msle) and the registry of physics losses."""

from opacity_jax.losses.data import (gradient_weights, masked_mean, mse, msle, wmse,
                                     get_data_loss, DATA_LOSSES)
from opacity_jax.losses import physics  # registers the physics losses
from opacity_jax.losses.physics import (get_physics_losses, register_physics_loss,
                                        registered_physics_losses)
