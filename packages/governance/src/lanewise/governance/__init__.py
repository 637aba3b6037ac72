"""lanewise.governance lane."""
