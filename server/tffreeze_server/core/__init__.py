"""The freeze engine. Imports TensorFlow, never gRPC; runs inside worker processes."""
