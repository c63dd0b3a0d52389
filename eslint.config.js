// ESLint with typescript-eslint: a linter only (formatting is the editor's, and unchecked).
// `make lint` runs it; `make test` and `make unit` depend on it. The rules: ESLint's and
// typescript-eslint's recommended sets (syntax only, not type-aware: type checking is
// tsc's, and this stays fast), with
//  * unused variables, imports and parameters as errors (a leading _ marks one kept on purpose);
//  * no explicit `any` (`unknown` and a narrowing, or a precise type);
//  * no-useless-assignment off: an initialiser every branch overwrites is harmless;
//  * non-null assertions allowed: with noUncheckedIndexedAccess, `xs[i]!` after a bounds
//    check is the idiom, and forbidding it would rewrite hundreds of lines for nothing.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'coverage/**', '.tap/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        structuredClone: 'readonly',
        fetch: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        NodeJS: 'readonly',
        performance: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'off',
      // a `let x = default` that every branch then assigns is a style choice tsc already checks
      'no-useless-assignment': 'off',
    },
  },
)
