"""Serve moto on 127.0.0.1:PORT seeded with the lab's `seed` scenario (the parts moto models).

Usage: python3 moto_seed.py PORT   -- prints READY once seeded, serves until stdin closes.

Two moto 5.2 deviations from ECS are corrected in-process so the Rust SDK can parse the answers:
container `cpu` is sent as a JSON number (ECS sends a string), and tasks decay from RUNNING one
state per read unless the state manager is told otherwise.
"""
import sys

import boto3
from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager
from moto.server import ThreadedMotoServer

port = int(sys.argv[1])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
endpoint = f"http://127.0.0.1:{port}"
session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
ecs = session.client("ecs", endpoint_url=endpoint)
scaling = session.client("application-autoscaling", endpoint_url=endpoint)
ec2 = session.client("ec2", endpoint_url=endpoint)
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
group = ec2.create_security_group(GroupName="evolution", Description="lab", VpcId=vpc)["GroupId"]
network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}

for stage, desired in (("staging", 0), ("production", 1)):
    cluster = f"alinhou-{stage}"
    family = f"{cluster}-EvolutionService"
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=family,
        # Not awsvpc: moto 5.2's awsvpc RunTask path fails on ENI attributes.
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {
                "name": "EvolutionService",
                "image": "evoapicloud/evolution-api:v2.3.7",
                "essential": True,
                # moto echoes container cpu/memory as JSON numbers where ECS sends strings (the
                # Rust SDK rejects that), so give only memoryReservation, which it does not echo.
                "memoryReservation": 2048,
            }
        ],
    )
    ecs.create_service(
        cluster=cluster,
        serviceName="EvolutionService",
        taskDefinition=family,
        desiredCount=0,
        launchType="FARGATE",
        # Production as SST creates it without a transform: ECS's defaults 200/100 (moto answers
        # 200/100 whatever is asked, so staging reports it too).
        deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 100}
        if desired
        else {"maximumPercent": 100, "minimumHealthyPercent": 0},
        networkConfiguration=network,
    )
    if desired:
        # moto's UpdateService marks the new desired count as running.
        ecs.update_service(cluster=cluster, service="EvolutionService", desiredCount=desired)
        ecs.run_task(
            cluster=cluster,
            taskDefinition=family,
            count=desired,
            launchType="FARGATE",
            group="service:EvolutionService",
        )
    scaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{cluster}/EvolutionService",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=desired,
        MaxCapacity=desired,
    )

for tasks in ecs_backends["123456789012"]["us-east-1"].tasks.values():
    for task in tasks.values():
        for container in task.containers:
            container.cpu = str(container.cpu)

print("READY", flush=True)
sys.stdin.read()
server.stop()
