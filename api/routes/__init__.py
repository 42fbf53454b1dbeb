"""HTTP routes, one router per module; ``api.main`` includes them."""
