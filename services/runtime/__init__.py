"""The one shared service runtime: bootstrap, config, logging, metrics, errors, image decoding.

Every service and the gateway import from here; nothing here imports a service.
"""
