"""The gRPC API (``albert.v1.AnswerService``), served from the gateway process over the same services."""
