"""Physics shared by the data generators and the physics-informed losses (one implementation)."""
