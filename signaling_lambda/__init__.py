"""Signaling for homelab-p2p-bridge.

The modules directly in this package are the AWS Lambda function (entry point
``signaling_lambda.handler.lambda_handler``) and depend on the standard library and
boto3 only, so they run unchanged on the Lambda Python runtime. ``gateway/`` runs the
same handler behind a local WebSocket server for homelabs without an AWS account.
"""
