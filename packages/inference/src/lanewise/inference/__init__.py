"""lanewise.inference lane."""
