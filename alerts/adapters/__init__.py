"""Delivery adapters (SMS, emergency broadcast, MQTT) behind one contract, see :mod:`tocsin.alerts.adapters.base`."""
