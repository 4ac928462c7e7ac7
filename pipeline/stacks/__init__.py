"""One module per CloudFormation stack; each builds a troposphere Template and makes no AWS call."""
