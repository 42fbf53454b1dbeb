"""LUGPI model definitions: encoders (text, image), the multimodal teacher, the text student.

Torch code. Importing this package imports nothing heavy; import the submodules.
"""
