"""File-defined machines through the API, with `expressway serve --definitions DIR` and
`expressway gateway --definitions DIR` as separate processes (not dev), on the broker of
`expressway dev` (own start topic and consumer group, so dev's executor is not involved).

Run by run.sh. Environment: FILES_URL (the gateway), BROKERS, EXPRESSWAY_BIN, ACCESS_KEY,
SECRET_KEY. The directory holds `files-hello.asl.json` (a Pass state greeting $.name).
"""
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

import test_clients as tc

URL = os.environ["FILES_URL"]
ARN = f"arn:aws:states:us-east-1:{tc.ACCOUNT}:stateMachine:files-hello"


def main():
    sfn = tc.client(URL)
    sync = tc.client(URL, inject_host_prefix=False)
    names = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
    tc.check("files-hello" in names, f"list_state_machines shows the file machine: {names}")
    d = sfn.describe_state_machine(stateMachineArn=ARN)
    tc.check(d["type"] == "EXPRESS" and json.loads(d["definition"])["StartAt"] == "Greet", "describe_state_machine of the file machine")
    tc.check("files-hello.asl.json" in d.get("description", "") and "read-only" in d["description"], f"marked as file-defined: {d.get('description')}")
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=ARN)["tags"]}
    tc.check(tags.get("expressway:source") == "definitions-directory", f"list_tags_for_resource marks it: {tags}")
    r = sync.start_sync_execution(stateMachineArn=ARN, input=json.dumps({"name": "Files"}))
    tc.check(r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"greeting": "Hello, Files!"}, f"start_sync_execution of the file machine: {r.get('output')}")
    started = sfn.start_execution(stateMachineArn=ARN, input=json.dumps({"name": "Async"}))
    found = tc.wait_for_result(started["executionArn"])
    tc.check(found is not None and found["output"] == {"greeting": "Hello, Async!"},
             f"start_execution of the file machine ran on the separate serve: {found}")
    tc.expect_error("StateMachineAlreadyExists", sfn.create_state_machine, name="files-hello",
                    definition=d["definition"], roleArn=tc.ROLE, type="EXPRESS")
    tc.expect_error("ConflictException", sfn.delete_state_machine, stateMachineArn=ARN)
    tc.expect_error("ConflictException", sfn.publish_state_machine_version, stateMachineArn=ARN)
    tc.expect_error("StateMachineDoesNotExist", sync.start_sync_execution, stateMachineArn=ARN + ":live")
    # One region and account.
    tc.expect_error("StateMachineDoesNotExist", sfn.start_execution,
                    stateMachineArn=ARN.replace("us-east-1", "eu-west-1"))
    tc.expect_error("StateMachineDoesNotExist", sync.start_sync_execution,
                    stateMachineArn=ARN.replace(tc.ACCOUNT, "999999999999"))
    eu = boto3.client("stepfunctions", endpoint_url=URL, region_name="eu-west-1", aws_access_key_id=tc.ACCESS_KEY,
                      aws_secret_access_key=tc.SECRET_KEY, config=Config(retries={"max_attempts": 1}))
    e = tc.expect_error("InvalidSignatureException", eu.list_state_machines)
    tc.check("scoped to a valid region" in e.response["Error"]["Message"], "signed for eu-west-1: AWS's message")
    print(f"all {tc.CHECKS} file-machine checks passed")


if __name__ == "__main__":
    main()
