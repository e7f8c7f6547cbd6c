"""An example shop: one durable workflow that takes an order from validation to email."""
