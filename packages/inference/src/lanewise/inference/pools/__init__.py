"""Pools of replicas behind one model name: routing by priority, balancing, breakers."""
