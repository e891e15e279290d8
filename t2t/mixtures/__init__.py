"""mixtures"""
