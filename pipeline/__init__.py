"""sagemaker-cd: generates a CodePipeline that trains, tests and ships a SageMaker model."""
