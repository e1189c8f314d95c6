"""Measurements of how training behaves: scheduled diagnostics (`diagnostics`, a registry), Hessian
curvature (`hessian`) and the loss surface around the final weights (`surface`)."""
