"""ARNs as CloudFormation expressions: partition, region and account always come from the stack."""

from __future__ import annotations

from troposphere import Sub


def arn(service: str, resource: str, *, region: bool = True, account: bool = True, **variables) -> Sub:
    """`arn:${AWS::Partition}:SERVICE:${AWS::Region}:${AWS::AccountId}:RESOURCE` as a Sub.

    `resource` may use ${Var} placeholders filled from `variables` (troposphere values).
    """
    region_part = "${AWS::Region}" if region else ""
    account_part = "${AWS::AccountId}" if account else ""
    text = f"arn:${{AWS::Partition}}:{service}:{region_part}:{account_part}:{resource}"
    return Sub(text, **variables) if variables else Sub(text)
