"""The Albert France Services gRPC API (``albert.v1``) as generated Python stubs.

``from albert_proto.v1 import answers_pb2, answers_pb2_grpc``. The stubs are generated from
``proto/albert/v1/*.proto`` when this package is built (``proto/setup.py``); never edit them by hand.
"""
