"""Detection service: MTCNN faces, landmarks, aligned crops and quality."""
