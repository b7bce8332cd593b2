"""Delivery adapters (SMS, emergency broadcast, MQTT) behind one contract, see :mod:`alerts.adapters.base`."""
