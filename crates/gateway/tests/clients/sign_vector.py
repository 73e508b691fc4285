"""Prints the Authorization header botocore computes for a fixed StartExecution request.

The value is pinned in crates/gateway/src/sigv4.rs (botocore_signed_start_execution) together
with the X-Amz-Date botocore used (it signs with the current time; re-pin both when regenerating).
Run: /work/venv-gw/bin/python crates/gateway/tests/clients/sign_vector.py
"""
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

body = '{"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:hello", "input": "{\\"name\\": \\"Ada\\"}"}'
req = AWSRequest(
    method="POST",
    url="http://localhost:8083/",
    data=body.encode(),
    headers={
        "X-Amz-Target": "AWSStepFunctions.StartExecution",
        "Content-Type": "application/x-amz-json-1.0",
    },
)
SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "states", "us-east-1").add_auth(req)
print(req.headers["X-Amz-Date"])
print(req.headers["Authorization"])
print(body)
