"""lanewise.observe lane."""
